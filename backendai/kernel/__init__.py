"""The in-container kernel runner.

``runner.py`` is standard-library-only Python (3.8+) that the agent bind-mounts
read-only into every kernel at ``/opt/backendai/kernel`` and starts as the
container's command.  It speaks framed JSON over ``<ipc>/runner.sock``; see the
module docstring of :mod:`backendai.kernel.runner`.  Nothing here imports the
rest of backendai, and the rest of backendai does not import the runner: it
only needs this package's directory.
"""
