"""FrozenCaptioner tooling around the remote-code model folder: tiny real models for tests and the demo, LoRA
helpers and the `frozencaptioner` command line."""
