set terminal pngcairo size 900,520 font ',11'
set output 'noise.png'
set datafile separator ','
set title 'Noisy Fashion-MNIST (sigma = 1 s): line weight manifold vs input concatenation (5 epochs)'
set xlabel 'noise level s'
set ylabel 'test accuracy'
set xrange [0:1]
set xtics 0.1
set yrange [0:1]
set grid
set key bottom left box opaque
set object 1 rect from 0.7, graph 0 to 1, graph 1 behind fillcolor rgb '#e0e0e0' fillstyle solid 1.0 noborder
set label 'grey: held out (never trained on)' at graph 0.99, graph 0.96 right
plot 'noise.csv' skip 1 using 1:3 with linespoints lw 2 pt 7 ps 0.8 lc rgb '#1f77b4' title 'weight manifold', \
     'noise.csv' skip 1 using 1:4 with linespoints lw 2 pt 5 ps 0.8 lc rgb '#d62728' title 'input concatenation'
