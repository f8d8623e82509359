"""Ray jobs over Herald's data: the rollup of delivery-log segments into Parquet (``jobs.rollup``);
and the Ray plumbing they share with the launcher (``local_ray``, ``ray_private``)."""
