"""What the CLI and the manager share: the wire protocol and its transport helpers.

- ``api.v1``: the gRPC API generated from ``protos/`` (``make generate``);
- :mod:`.frames`: the Tunnel stream's frames without protobuf objects;
- :mod:`.lane`: the lane's framing and streams (both ends; the manager's listener is
  ``kdiag_manager.laneserver``, the CLI's end ``kdiag.session.lane``);
- :mod:`.grpccore`: gRPC's core on the polling path (set before gRPC loads);
- :mod:`.channel`: the gRPC options both ends use, and wider unix socket buffers;
- :mod:`.sockets`: closing with a reset, waiting for readable sockets;
- :mod:`.workers`: reusable daemon threads for per-connection work.

The CLI (``kdiag``) imports nothing else of the manager, and nothing here imports the rest of
``kdiag_manager``: a change to the agent's internals cannot break the CLI.
"""
