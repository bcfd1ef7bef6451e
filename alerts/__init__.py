"""Alerts: edge-triggered rules, their webhook deliveries (Alertmanager format), and the jobs that send them."""
