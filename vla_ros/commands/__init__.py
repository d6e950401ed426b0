"""One module per `vla-ros` verb: `register(verbs)` adds its parser; heavy imports wait for `run`."""
