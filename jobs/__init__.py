"""Ray jobs over Herald's data: the rollup of delivery-log segments into Parquet (``jobs.rollup``)."""
