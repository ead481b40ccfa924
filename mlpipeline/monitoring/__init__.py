"""Monitoring: how each scored day's model inputs and scores compare with the model's own
training and validation data (`monitor.monitor_day`)."""
