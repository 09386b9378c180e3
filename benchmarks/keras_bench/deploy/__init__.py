"""Deployable variants of a trained model for the deploy suite: pruning, TFLite and Keras int8, their measurements."""
