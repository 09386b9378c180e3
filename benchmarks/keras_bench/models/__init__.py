"""Model builders by name and the Keras backend they run on: backend facts, precision, XLA, the timed import."""
