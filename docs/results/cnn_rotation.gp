set terminal pngcairo size 900,520 font ',11'
set output 'cnn_rotation.png'
set datafile separator ','
set title 'Rotated Fashion-MNIST, CNN: circle weight manifold vs input concatenation (3 epochs)'
set xlabel 'rotation angle (degrees)'
set ylabel 'test accuracy'
set xrange [0:360]
set xtics 30
set yrange [0:1]
set grid
set key bottom left box opaque
set object 1 rect from 270, graph 0 to 360, graph 1 behind fillcolor rgb '#e0e0e0' fillstyle solid 1.0 noborder
set label 'grey: held out (never trained on)' at graph 0.99, graph 0.96 right
plot 'cnn_rotation.csv' skip 1 using 2:3 with linespoints lw 2 pt 7 ps 0.8 lc rgb '#1f77b4' title 'weight manifold', \
     'cnn_rotation.csv' skip 1 using 2:4 with linespoints lw 2 pt 5 ps 0.8 lc rgb '#d62728' title 'input concatenation', \
     'cnn_rotation.csv' skip 1 every ::0::0 using ($2+360):3 with points pt 7 ps 0.8 lc rgb '#1f77b4' notitle, \
     'cnn_rotation.csv' skip 1 every ::0::0 using ($2+360):4 with points pt 5 ps 0.8 lc rgb '#d62728' notitle
