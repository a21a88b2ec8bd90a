"""The practice tools: the embedded demo (its data, its simulator, the demo stack of Prometheus and
Alertmanager) and the failure drills. They sit on top of the exporter's core and use only its public
names; nothing in the core imports them."""
