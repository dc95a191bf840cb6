set terminal pngcairo size 1500,500 font ',11'
set output 'torus.png'
set datafile separator ','
set multiplot layout 1,3 title 'Rotation x orbiting shift on a torus (4 epochs); box: held out of training'
set xlabel 'rotation angle (degrees)'
set ylabel 'shift phase (degrees)'
set xrange [-15:345]
set yrange [-22.5:337.5]
set xtics 60
set ytics 90
set size ratio -1
set object 1 rect from 255,157.5 to 345,337.5 front fillstyle empty border lc rgb 'white' lw 3
set palette defined (0 '#000004', 0.5 '#b73779', 1 '#fcfdbf')
set cbrange [0:1]
set title 'weight manifold: test accuracy'
plot 'torus.csv' skip 1 using 3:4:5 with image notitle
set title 'input concatenation: test accuracy'
plot 'torus.csv' skip 1 using 3:4:6 with image notitle
set palette defined (-1 '#b2182b', 0 '#f7f7f7', 1 '#2166ac')
set cbrange [-0.3:0.3]
set object 1 rect fillstyle empty border lc rgb 'black'
set title 'manifold - concat (blue: manifold better)'
plot 'torus.csv' skip 1 using 3:4:($5-$6) with image notitle
unset multiplot
