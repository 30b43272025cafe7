"""`simrun sweep`: many runs of one experiment over a [sweep] table of parameters (points), run on local
processes or a Ray cluster, written as one hive-partitioned Parquet dataset that resumes where it stopped."""
