"""Analytics over the rolled-up delivery log: ``herald report`` (numbers as JSON, or one HTML page).

``analytics.scan`` reads the Parquet (pyarrow), ``analytics.metrics`` counts (pandas),
``analytics.plots`` draws (matplotlib), ``analytics.page`` lays out the HTML, and
``analytics.report`` ties them together.
"""
