"""Configuration: composing ``conf/``, checking options, the gate for stored configs, resolvers."""
