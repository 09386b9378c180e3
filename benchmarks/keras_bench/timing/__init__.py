"""How long steps take: the step timer, its statistics, timed fit and predict repeats, and the rows they become."""
