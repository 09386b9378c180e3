"""Training shared by the suites: compile and fit (fit), backups and logs (checkpoint), tf.distribute (distribute)."""
