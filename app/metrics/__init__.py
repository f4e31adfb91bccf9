"""Prometheus metrics: the API's request counters, scrape-time job and queue gauges, and `GET /metrics`."""
