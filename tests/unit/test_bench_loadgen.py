"""The load generator's pure parts: reading wrk's report, writing its Lua."""

from __future__ import annotations

import pytest

from bench.loadgen import LoadResult, parse_wrk, wrk_script

WRK_REPORT = """Running 2s test @ http://127.0.0.1:18777/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.49ms   15.52ms 152.92ms   92.01%
    Req/Sec     1.36k   749.56     3.69k    85.00%
  Latency Distribution
     50%    1.96ms
     75%    6.48ms
     90%   19.49ms
     99%   90.28ms
  2764 requests in 2.06s, 1.46MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 764
Requests/sec:   1340.52
Transfer/sec:    726.55KB
"""


def test_wrk_report_is_read_with_refusals_left_out_of_throughput() -> None:
    result = parse_wrk(WRK_REPORT)
    assert result == LoadResult(tool="wrk", requests=2764, non_2xx=764, errors=5, seconds=2.06,
                                p50_ms=1.96, p99_ms=90.28)
    assert result.ok_per_s == pytest.approx(2000 / 2.06)


def test_wrk_units_are_converted() -> None:
    report = WRK_REPORT.replace("1.96ms", "850.00us").replace("90.28ms", "1.20s").replace(
        "in 2.06s", "in 1.00m")
    result = parse_wrk(report)
    assert (result.p50_ms, result.p99_ms, result.seconds) == (0.85, 1200.0, 60.0)


def test_a_report_without_a_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="no request count"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_wrk_script_quotes_the_body_and_headers() -> None:
    script = wrk_script(b'{"a": "b\\\\c"}', {"Authorization": "Bearer k"})
    assert 'wrk.method = "POST"' in script
    assert 'wrk.body = "{\\"a\\": \\"b\\\\\\\\c\\"}"' in script
    assert 'wrk.headers["Authorization"] = "Bearer k"' in script
