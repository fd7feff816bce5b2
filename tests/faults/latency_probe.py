#!/usr/bin/env python3
"""A legitimate client measuring a server's latency while it is under attack (stdlib only).

    latency_probe.py URL SECONDS [INTERVAL_MS] [EXPECT_BYTES]

GETs URL on a new connection every INTERVAL_MS (default 20) for SECONDS and prints one line:
`requests=N failed=F p50_ms=… p99_ms=… max_ms=…`. A request fails when it errors, times out
(5 s), answers other than 200 or (with EXPECT_BYTES) with another body length. Exit 0.
"""

import sys
import time
import urllib.request


def main():
    url, seconds = sys.argv[1], float(sys.argv[2])
    interval = float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.02
    expect = int(sys.argv[4]) if len(sys.argv) > 4 else None
    took, failed = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read()
                ok = response.status == 200 and (expect is None or len(body) == expect)
        except OSError:
            ok = False
        elapsed = time.monotonic() - start
        took.append(elapsed)
        failed += 0 if ok else 1
        time.sleep(max(0.0, interval - elapsed))
    took.sort()
    pick = lambda q: took[min(len(took) - 1, int(q * len(took)))] * 1000 if took else 0
    print("requests=%d failed=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f" %
          (len(took), failed, pick(0.5), pick(0.99), took[-1] * 1000 if took else 0))


if __name__ == "__main__":
    main()
