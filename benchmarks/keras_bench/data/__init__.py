"""Images for the suites: in-memory splits (datasets), TFRecord shards (tfrecords) and what feeds fit (pipeline)."""
