"""What every family's deployments share: the gateway core and the encoder base."""
