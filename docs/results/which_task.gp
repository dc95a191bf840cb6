# which_task.gp -- written by examples/which_task.c; plots its two CSV files.
set terminal pngcairo size 1300,1100 font ',10'
set output 'which_task.png'
set datafile separator ','
set multiplot layout 2,2 title 'Which task is this? Recovering an unknown context (wm\_infer\_context\_batch)'
set logscale xy
set xtics ('1' 1, '8' 8, '32' 32, '128' 128)
set xrange [0.8:160]
set grid
set key below font ',8' maxrows 3
SP = 'train heldout'
sel(task,sp,col) = (strcol(1) eq task && strcol(2) eq sp) ? column(col) : 1/0
do for [tk in 'rotation noise'] {
  set title (tk eq 'rotation' ? 'rotation (circle net): angle error' : 'noise (line net): noise-level error')
  set xlabel 'images sharing the unknown context (1 = per sample)'
  set ylabel (tk eq 'rotation' ? 'error (degrees)' : 'error (units of s)')
  plot 'which_task_error.csv' skip 1 using 3:(sel(tk,'train',5)) w lp lw 2 pt 7 lc rgb '#1f77b4' title 'labels, train range, median', \
       '' skip 1 using 3:(sel(tk,'train',6)) w lp lw 1 dt 2 pt 7 lc rgb '#1f77b4' title 'labels, train range, 90th pct', \
       '' skip 1 using 3:(sel(tk,'train',7)) w lp lw 2 pt 5 lc rgb '#2ca02c' title 'entropy, train range, median', \
       '' skip 1 using 3:(sel(tk,'train',8)) w lp lw 1 dt 2 pt 5 lc rgb '#2ca02c' title 'entropy, train range, 90th pct', \
       '' skip 1 using 3:(sel(tk,'heldout',5)) w lp lw 2 pt 6 lc rgb '#d62728' title 'labels, held out, median', \
       '' skip 1 using 3:(sel(tk,'heldout',7)) w lp lw 2 pt 4 lc rgb '#ff7f0e' title 'entropy, held out, median', \
       '' skip 1 using 3:(sel(tk,'heldout',8)) w lp lw 1 dt 2 pt 4 lc rgb '#ff7f0e' title 'entropy, held out, 90th pct'
}
unset logscale y
set yrange [0:1]
set key below font ',8' maxrows 4
do for [tk in 'rotation noise'] {
  set title tk.': accuracy without labels (solid: train range, dashed: held out)'
  set ylabel 'test accuracy'
  plot for [i=1:2] 'which_task_acc.csv' skip 1 using 3:(sel(tk,word(SP,i),5)) w lp lw 2 dt i pt 7 lc rgb '#1f77b4' title 'manifold, true s '.word(SP,i), \
       for [i=1:2] '' skip 1 using 3:(sel(tk,word(SP,i),6)) w lp lw 2 dt i pt 5 lc rgb '#2ca02c' title 'manifold, inferred s '.word(SP,i), \
       for [i=1:2] '' skip 1 using 3:(sel(tk,word(SP,i),7)) w lp lw 1 dt i pt 9 lc rgb '#d62728' title 'concat, true s '.word(SP,i), \
       for [i=1:2] '' skip 1 using 3:(sel(tk,word(SP,i),8)) w lp lw 1 dt i pt 11 lc rgb '#9467bd' title 'concat, random s '.word(SP,i), \
       for [i=1:2] '' skip 1 using 3:(sel(tk,word(SP,i),10)) w lp lw 1 dt i pt 13 lc rgb '#7f7f7f' title 'plain MLP (no s) '.word(SP,i)
}
unset multiplot
