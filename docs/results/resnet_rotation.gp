set terminal pngcairo size 900,520
set output 'resnet_rotation.png'
set datafile separator ','
set key bottom left
set title 'Residual CNN + group norm, rotated Fashion-MNIST (mean of seeds)'
set xlabel 'rotation (degrees)'
set ylabel 'test accuracy'
set object 1 rect from 275,graph 0 to 355,graph 1 fc rgb '#eeeeee' behind
set xrange [0:350]
plot for [m in 'manifold concat film lastblock'] 'resnet_rotation.csv' using (strcol(1) eq m ? $3 : 1/0):5 smooth unique with linespoints title m
