"""Language plugins: each language's sensors (checker, tests, build/init, imports) as real tools.

``registry.detect_plugins`` picks the plugins for a workspace and task; ``python.PythonPlugin``
and ``rust.RustPlugin`` implement :class:`keel.engine.ports.LanguagePlugin`. Modules are
imported explicitly (nothing is re-exported here) so that importing one plugin does not start
up the others' dependencies.
"""
