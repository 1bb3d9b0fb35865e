"""Serves a prometheus_client exposition for the agent scrape integration test.

usage: prom_exporter.py PORT CONTROL_DIR

Exposes one metric of every client type (counter, gauge, histogram, summary, info, enum) plus
`demo_items{kind="a"|"b"}`; while the file CONTROL_DIR/drop_b exists, `demo_items{kind="b"}` is not
exposed (the test's way to make a series disappear). prometheus_client answers in OpenMetrics when
the scraper asks for it, and gzip-compresses when it accepts gzip.
"""
import os
import sys
import time

from prometheus_client import REGISTRY, Counter, Enum, Gauge, Histogram, Info, Summary, start_http_server
from prometheus_client.core import GaugeMetricFamily

port, control = int(sys.argv[1]), sys.argv[2]


class Items:
    """A collector evaluated at every scrape, so the control file takes effect at once."""

    def collect(self):
        g = GaugeMetricFamily("demo_items", "Items by kind.", labels=["kind"])
        g.add_metric(["a"], 1)
        if not os.path.exists(os.path.join(control, "drop_b")):
            g.add_metric(["b"], 2)
        yield g


REGISTRY.register(Items())
Counter("demo_requests", "Requests handled.", ["code"]).labels("200").inc(5)
Histogram("demo_latency_seconds", "Request latency.", buckets=[0.1, 1]).observe(0.05)
Summary("demo_size_bytes", "Response sizes.").observe(10)
Info("demo_build", "Build information.").info({"version": "1.2.3"})
Enum("demo_state", "Lifecycle state.", states=["starting", "running"]).state("running")
Gauge("demo_escaped", 'Help with a \\ backslash and "quotes".', ["path"]).labels('C:\\dir "x"\nline2').set(1)

start_http_server(port, addr="127.0.0.1")
print("ready", flush=True)
while True:
    time.sleep(3600)
