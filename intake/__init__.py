"""The intake: operators' signed task responses, checked cheaply, stored durably, then acknowledged."""
