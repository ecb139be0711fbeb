"""The run's settings: the typed schema (:mod:`.schema`), YAML files and ``key=value``
overrides with validation (:mod:`.loading`) and Python keyword settings (:mod:`.settings`)."""
