from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    INCOMING: _ClassVar[Direction]
    OUTGOING: _ClassVar[Direction]
DIRECTION_UNSPECIFIED: Direction
INCOMING: Direction
OUTGOING: Direction

class VersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VersionResponse(_message.Message):
    __slots__ = ("version", "pid", "target_pid", "node_mode", "session", "features", "python")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    TARGET_PID_FIELD_NUMBER: _ClassVar[int]
    NODE_MODE_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    version: str
    pid: int
    target_pid: int
    node_mode: bool
    session: str
    features: _containers.RepeatedScalarFieldContainer[str]
    python: str
    def __init__(self, version: _Optional[str] = ..., pid: _Optional[int] = ..., target_pid: _Optional[int] = ..., node_mode: _Optional[bool] = ..., session: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ..., python: _Optional[str] = ...) -> None: ...

class PsRequest(_message.Message):
    __slots__ = ("all",)
    ALL_FIELD_NUMBER: _ClassVar[int]
    all: bool
    def __init__(self, all: _Optional[bool] = ...) -> None: ...

class ListeningSocket(_message.Message):
    __slots__ = ("protocol", "address", "port")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    address: str
    port: int
    def __init__(self, protocol: _Optional[str] = ..., address: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class Process(_message.Message):
    __slots__ = ("pid", "ppid", "uid", "user", "argv", "comm", "listening", "is_target", "pod_uid", "container_id")
    PID_FIELD_NUMBER: _ClassVar[int]
    PPID_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    LISTENING_FIELD_NUMBER: _ClassVar[int]
    IS_TARGET_FIELD_NUMBER: _ClassVar[int]
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    ppid: int
    uid: int
    user: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    comm: str
    listening: _containers.RepeatedCompositeFieldContainer[ListeningSocket]
    is_target: bool
    pod_uid: str
    container_id: str
    def __init__(self, pid: _Optional[int] = ..., ppid: _Optional[int] = ..., uid: _Optional[int] = ..., user: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., comm: _Optional[str] = ..., listening: _Optional[_Iterable[_Union[ListeningSocket, _Mapping]]] = ..., is_target: _Optional[bool] = ..., pod_uid: _Optional[str] = ..., container_id: _Optional[str] = ...) -> None: ...

class PsResponse(_message.Message):
    __slots__ = ("processes",)
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[Process]
    def __init__(self, processes: _Optional[_Iterable[_Union[Process, _Mapping]]] = ...) -> None: ...

class ExecStart(_message.Message):
    __slots__ = ("argv", "script", "env", "inherit_env", "timeout_seconds", "tty", "rows", "cols", "workdir", "host")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARGV_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    INHERIT_ENV_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    script: str
    env: _containers.ScalarMap[str, str]
    inherit_env: bool
    timeout_seconds: float
    tty: bool
    rows: int
    cols: int
    workdir: str
    host: bool
    def __init__(self, argv: _Optional[_Iterable[str]] = ..., script: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., inherit_env: _Optional[bool] = ..., timeout_seconds: _Optional[float] = ..., tty: _Optional[bool] = ..., rows: _Optional[int] = ..., cols: _Optional[int] = ..., workdir: _Optional[str] = ..., host: _Optional[bool] = ...) -> None: ...

class WindowSize(_message.Message):
    __slots__ = ("rows", "cols")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class ExecRequest(_message.Message):
    __slots__ = ("start", "stdin", "stdin_eof", "resize", "signal")
    START_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    STDIN_EOF_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    start: ExecStart
    stdin: bytes
    stdin_eof: bool
    resize: WindowSize
    signal: int
    def __init__(self, start: _Optional[_Union[ExecStart, _Mapping]] = ..., stdin: _Optional[bytes] = ..., stdin_eof: _Optional[bool] = ..., resize: _Optional[_Union[WindowSize, _Mapping]] = ..., signal: _Optional[int] = ...) -> None: ...

class ExecExit(_message.Message):
    __slots__ = ("exit_code", "signal", "timed_out", "duration_seconds")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    signal: int
    timed_out: bool
    duration_seconds: float
    def __init__(self, exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., timed_out: _Optional[bool] = ..., duration_seconds: _Optional[float] = ...) -> None: ...

class ExecResponse(_message.Message):
    __slots__ = ("started_pid", "stdout", "stderr", "exit")
    STARTED_PID_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    started_pid: int
    stdout: bytes
    stderr: bytes
    exit: ExecExit
    def __init__(self, started_pid: _Optional[int] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit: _Optional[_Union[ExecExit, _Mapping]] = ...) -> None: ...

class HeaderFilter(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class RedirectSpec(_message.Message):
    __slots__ = ("direction", "ports", "destination", "fail_open", "fail_open_timeout_seconds", "header_filter", "session", "batch_closed", "skip_sources", "mirror")
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    FAIL_OPEN_FIELD_NUMBER: _ClassVar[int]
    FAIL_OPEN_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HEADER_FILTER_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    BATCH_CLOSED_FIELD_NUMBER: _ClassVar[int]
    SKIP_SOURCES_FIELD_NUMBER: _ClassVar[int]
    MIRROR_FIELD_NUMBER: _ClassVar[int]
    direction: Direction
    ports: _containers.RepeatedScalarFieldContainer[int]
    destination: str
    fail_open: bool
    fail_open_timeout_seconds: float
    header_filter: HeaderFilter
    session: str
    batch_closed: bool
    skip_sources: _containers.RepeatedScalarFieldContainer[str]
    mirror: bool
    def __init__(self, direction: _Optional[_Union[Direction, str]] = ..., ports: _Optional[_Iterable[int]] = ..., destination: _Optional[str] = ..., fail_open: _Optional[bool] = ..., fail_open_timeout_seconds: _Optional[float] = ..., header_filter: _Optional[_Union[HeaderFilter, _Mapping]] = ..., session: _Optional[str] = ..., batch_closed: _Optional[bool] = ..., skip_sources: _Optional[_Iterable[str]] = ..., mirror: _Optional[bool] = ...) -> None: ...

class RejectConnection(_message.Message):
    __slots__ = ("connection_id", "reason")
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    connection_id: int
    reason: str
    def __init__(self, connection_id: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class RedirectRequest(_message.Message):
    __slots__ = ("spec", "reject")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REJECT_FIELD_NUMBER: _ClassVar[int]
    spec: RedirectSpec
    reject: RejectConnection
    def __init__(self, spec: _Optional[_Union[RedirectSpec, _Mapping]] = ..., reject: _Optional[_Union[RejectConnection, _Mapping]] = ...) -> None: ...

class RedirectReady(_message.Message):
    __slots__ = ("listen_port", "rules", "session", "redirect_id", "raw_data", "warnings", "mechanism", "copy_stream")
    LISTEN_PORT_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_ID_FIELD_NUMBER: _ClassVar[int]
    RAW_DATA_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    COPY_STREAM_FIELD_NUMBER: _ClassVar[int]
    listen_port: int
    rules: _containers.RepeatedScalarFieldContainer[str]
    session: str
    redirect_id: int
    raw_data: bool
    warnings: _containers.RepeatedScalarFieldContainer[str]
    mechanism: str
    copy_stream: bool
    def __init__(self, listen_port: _Optional[int] = ..., rules: _Optional[_Iterable[str]] = ..., session: _Optional[str] = ..., redirect_id: _Optional[int] = ..., raw_data: _Optional[bool] = ..., warnings: _Optional[_Iterable[str]] = ..., mechanism: _Optional[str] = ..., copy_stream: _Optional[bool] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("host", "port")
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    host: str
    port: int
    def __init__(self, host: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class NewConnection(_message.Message):
    __slots__ = ("connection_id", "original_destination", "peer", "data")
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_DESTINATION_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    connection_id: int
    original_destination: Endpoint
    peer: Endpoint
    data: bytes
    def __init__(self, connection_id: _Optional[int] = ..., original_destination: _Optional[_Union[Endpoint, _Mapping]] = ..., peer: _Optional[_Union[Endpoint, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ConnectionClosed(_message.Message):
    __slots__ = ("connection_id", "route", "bytes_from_peer", "bytes_to_peer", "error")
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    BYTES_FROM_PEER_FIELD_NUMBER: _ClassVar[int]
    BYTES_TO_PEER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    connection_id: int
    route: str
    bytes_from_peer: int
    bytes_to_peer: int
    error: str
    def __init__(self, connection_id: _Optional[int] = ..., route: _Optional[str] = ..., bytes_from_peer: _Optional[int] = ..., bytes_to_peer: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ConnectionsClosed(_message.Message):
    __slots__ = ("closed",)
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    closed: _containers.RepeatedCompositeFieldContainer[ConnectionClosed]
    def __init__(self, closed: _Optional[_Iterable[_Union[ConnectionClosed, _Mapping]]] = ...) -> None: ...

class RedirectEvent(_message.Message):
    __slots__ = ("ready", "connection", "closed", "closed_batch")
    READY_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    CLOSED_BATCH_FIELD_NUMBER: _ClassVar[int]
    ready: RedirectReady
    connection: NewConnection
    closed: ConnectionClosed
    closed_batch: ConnectionsClosed
    def __init__(self, ready: _Optional[_Union[RedirectReady, _Mapping]] = ..., connection: _Optional[_Union[NewConnection, _Mapping]] = ..., closed: _Optional[_Union[ConnectionClosed, _Mapping]] = ..., closed_batch: _Optional[_Union[ConnectionsClosed, _Mapping]] = ...) -> None: ...

class TunnelOpen(_message.Message):
    __slots__ = ("connection_id", "redirect_id", "keep_idle", "raw_data", "early_data", "copies", "handoff")
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_ID_FIELD_NUMBER: _ClassVar[int]
    KEEP_IDLE_FIELD_NUMBER: _ClassVar[int]
    RAW_DATA_FIELD_NUMBER: _ClassVar[int]
    EARLY_DATA_FIELD_NUMBER: _ClassVar[int]
    COPIES_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    connection_id: int
    redirect_id: int
    keep_idle: int
    raw_data: bool
    early_data: bool
    copies: bool
    handoff: bool
    def __init__(self, connection_id: _Optional[int] = ..., redirect_id: _Optional[int] = ..., keep_idle: _Optional[int] = ..., raw_data: _Optional[bool] = ..., early_data: _Optional[bool] = ..., copies: _Optional[bool] = ..., handoff: _Optional[bool] = ...) -> None: ...

class CopyChunk(_message.Message):
    __slots__ = ("copy_id", "original_destination", "peer", "data", "end", "dropped")
    COPY_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_DESTINATION_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    copy_id: int
    original_destination: Endpoint
    peer: Endpoint
    data: bytes
    end: bool
    dropped: str
    def __init__(self, copy_id: _Optional[int] = ..., original_destination: _Optional[_Union[Endpoint, _Mapping]] = ..., peer: _Optional[_Union[Endpoint, _Mapping]] = ..., data: _Optional[bytes] = ..., end: _Optional[bool] = ..., dropped: _Optional[str] = ...) -> None: ...

class CopyChunks(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[CopyChunk]
    def __init__(self, chunks: _Optional[_Iterable[_Union[CopyChunk, _Mapping]]] = ...) -> None: ...

class TunnelFrame(_message.Message):
    __slots__ = ("open", "data", "eof", "reset", "assigned", "connected", "connected_data", "copies", "handoff_ended")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_DATA_FIELD_NUMBER: _ClassVar[int]
    COPIES_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_ENDED_FIELD_NUMBER: _ClassVar[int]
    open: TunnelOpen
    data: bytes
    eof: bool
    reset: str
    assigned: NewConnection
    connected: bool
    connected_data: bytes
    copies: CopyChunks
    handoff_ended: HandoffEnded
    def __init__(self, open: _Optional[_Union[TunnelOpen, _Mapping]] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ..., reset: _Optional[str] = ..., assigned: _Optional[_Union[NewConnection, _Mapping]] = ..., connected: _Optional[bool] = ..., connected_data: _Optional[bytes] = ..., copies: _Optional[_Union[CopyChunks, _Mapping]] = ..., handoff_ended: _Optional[_Union[HandoffEnded, _Mapping]] = ...) -> None: ...

class HandoffEnded(_message.Message):
    __slots__ = ("to_operator", "from_operator", "error")
    TO_OPERATOR_FIELD_NUMBER: _ClassVar[int]
    FROM_OPERATOR_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    to_operator: int
    from_operator: int
    error: str
    def __init__(self, to_operator: _Optional[int] = ..., from_operator: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class CaptureRequest(_message.Message):
    __slots__ = ("filter", "interface", "max_packets", "max_bytes", "duration_seconds", "snaplen")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    MAX_PACKETS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SNAPLEN_FIELD_NUMBER: _ClassVar[int]
    filter: str
    interface: str
    max_packets: int
    max_bytes: int
    duration_seconds: float
    snaplen: int
    def __init__(self, filter: _Optional[str] = ..., interface: _Optional[str] = ..., max_packets: _Optional[int] = ..., max_bytes: _Optional[int] = ..., duration_seconds: _Optional[float] = ..., snaplen: _Optional[int] = ...) -> None: ...

class CaptureControl(_message.Message):
    __slots__ = ("start", "stop")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    start: CaptureRequest
    stop: bool
    def __init__(self, start: _Optional[_Union[CaptureRequest, _Mapping]] = ..., stop: _Optional[bool] = ...) -> None: ...

class CaptureDone(_message.Message):
    __slots__ = ("packets", "bytes", "reason", "error")
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    packets: int
    bytes: int
    reason: str
    error: str
    def __init__(self, packets: _Optional[int] = ..., bytes: _Optional[int] = ..., reason: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class CaptureChunk(_message.Message):
    __slots__ = ("data", "done", "started")
    DATA_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    done: CaptureDone
    started: bool
    def __init__(self, data: _Optional[bytes] = ..., done: _Optional[_Union[CaptureDone, _Mapping]] = ..., started: _Optional[bool] = ...) -> None: ...

class FileInfo(_message.Message):
    __slots__ = ("path", "size", "mode", "uid", "gid", "mtime", "keep_owner", "make_parents", "directory")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    MTIME_FIELD_NUMBER: _ClassVar[int]
    KEEP_OWNER_FIELD_NUMBER: _ClassVar[int]
    MAKE_PARENTS_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    keep_owner: bool
    make_parents: bool
    directory: bool
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., mtime: _Optional[float] = ..., keep_owner: _Optional[bool] = ..., make_parents: _Optional[bool] = ..., directory: _Optional[bool] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("info", "data")
    INFO_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    info: FileInfo
    data: bytes
    def __init__(self, info: _Optional[_Union[FileInfo, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ReadFileRequest(_message.Message):
    __slots__ = ("path", "max_bytes")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    path: str
    max_bytes: int
    def __init__(self, path: _Optional[str] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class WriteFileResponse(_message.Message):
    __slots__ = ("bytes", "info")
    BYTES_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    info: FileInfo
    def __init__(self, bytes: _Optional[int] = ..., info: _Optional[_Union[FileInfo, _Mapping]] = ...) -> None: ...

class ListDirRequest(_message.Message):
    __slots__ = ("path", "max_entries")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    path: str
    max_entries: int
    def __init__(self, path: _Optional[str] = ..., max_entries: _Optional[int] = ...) -> None: ...

class DirEntry(_message.Message):
    __slots__ = ("path", "kind", "info", "link")
    PATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    path: str
    kind: str
    info: FileInfo
    link: str
    def __init__(self, path: _Optional[str] = ..., kind: _Optional[str] = ..., info: _Optional[_Union[FileInfo, _Mapping]] = ..., link: _Optional[str] = ...) -> None: ...

class ListDirResponse(_message.Message):
    __slots__ = ("entries", "truncated")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[DirEntry]
    truncated: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[DirEntry, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ReadTreeRequest(_message.Message):
    __slots__ = ("path", "max_entries", "max_bytes")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    path: str
    max_entries: int
    max_bytes: int
    def __init__(self, path: _Optional[str] = ..., max_entries: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class TreeDone(_message.Message):
    __slots__ = ("entries", "bytes")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    entries: int
    bytes: int
    def __init__(self, entries: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class TreeChunk(_message.Message):
    __slots__ = ("entry", "data", "done")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    entry: DirEntry
    data: bytes
    done: TreeDone
    def __init__(self, entry: _Optional[_Union[DirEntry, _Mapping]] = ..., data: _Optional[bytes] = ..., done: _Optional[_Union[TreeDone, _Mapping]] = ...) -> None: ...

class TreeChunks(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[TreeChunk]
    def __init__(self, chunks: _Optional[_Iterable[_Union[TreeChunk, _Mapping]]] = ...) -> None: ...

class NetRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Interface(_message.Message):
    __slots__ = ("index", "name", "mac", "mtu", "state", "flags")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    mac: str
    mtu: int
    state: str
    flags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., mac: _Optional[str] = ..., mtu: _Optional[int] = ..., state: _Optional[str] = ..., flags: _Optional[_Iterable[str]] = ...) -> None: ...

class Address(_message.Message):
    __slots__ = ("interface", "family", "address", "prefixlen")
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PREFIXLEN_FIELD_NUMBER: _ClassVar[int]
    interface: str
    family: str
    address: str
    prefixlen: int
    def __init__(self, interface: _Optional[str] = ..., family: _Optional[str] = ..., address: _Optional[str] = ..., prefixlen: _Optional[int] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("family", "destination", "gateway", "interface", "metric", "table", "source")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    family: str
    destination: str
    gateway: str
    interface: str
    metric: int
    table: int
    source: str
    def __init__(self, family: _Optional[str] = ..., destination: _Optional[str] = ..., gateway: _Optional[str] = ..., interface: _Optional[str] = ..., metric: _Optional[int] = ..., table: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...

class Neighbour(_message.Message):
    __slots__ = ("interface", "address", "mac", "state")
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    interface: str
    address: str
    mac: str
    state: str
    def __init__(self, interface: _Optional[str] = ..., address: _Optional[str] = ..., mac: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class NetResponse(_message.Message):
    __slots__ = ("interfaces", "addresses", "routes", "neighbours", "resolv_conf", "hosts")
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    RESOLV_CONF_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    interfaces: _containers.RepeatedCompositeFieldContainer[Interface]
    addresses: _containers.RepeatedCompositeFieldContainer[Address]
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    neighbours: _containers.RepeatedCompositeFieldContainer[Neighbour]
    resolv_conf: str
    hosts: str
    def __init__(self, interfaces: _Optional[_Iterable[_Union[Interface, _Mapping]]] = ..., addresses: _Optional[_Iterable[_Union[Address, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ..., neighbours: _Optional[_Iterable[_Union[Neighbour, _Mapping]]] = ..., resolv_conf: _Optional[str] = ..., hosts: _Optional[str] = ...) -> None: ...

class ProbeRequest(_message.Message):
    __slots__ = ("kind", "url", "method", "headers", "body", "host", "port", "timeout_seconds", "bypass_redirect", "max_body_bytes", "send", "expect", "verify")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BYPASS_REDIRECT_FIELD_NUMBER: _ClassVar[int]
    MAX_BODY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SEND_FIELD_NUMBER: _ClassVar[int]
    EXPECT_FIELD_NUMBER: _ClassVar[int]
    VERIFY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    url: str
    method: str
    headers: _containers.ScalarMap[str, str]
    body: bytes
    host: str
    port: int
    timeout_seconds: float
    bypass_redirect: bool
    max_body_bytes: int
    send: bytes
    expect: bytes
    verify: bool
    def __init__(self, kind: _Optional[str] = ..., url: _Optional[str] = ..., method: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., body: _Optional[bytes] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., timeout_seconds: _Optional[float] = ..., bypass_redirect: _Optional[bool] = ..., max_body_bytes: _Optional[int] = ..., send: _Optional[bytes] = ..., expect: _Optional[bytes] = ..., verify: _Optional[bool] = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class ProbeResponse(_message.Message):
    __slots__ = ("ok", "status", "headers", "body", "elapsed_ms", "error", "addresses", "reason", "truncated")
    OK_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    status: int
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    body: bytes
    elapsed_ms: float
    error: str
    addresses: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    truncated: bool
    def __init__(self, ok: _Optional[bool] = ..., status: _Optional[int] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., body: _Optional[bytes] = ..., elapsed_ms: _Optional[float] = ..., error: _Optional[str] = ..., addresses: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ..., truncated: _Optional[bool] = ...) -> None: ...

class EnvironRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EnvVar(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: bytes
    value: bytes
    def __init__(self, name: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class EnvironResponse(_message.Message):
    __slots__ = ("vars", "pid")
    VARS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    vars: _containers.RepeatedCompositeFieldContainer[EnvVar]
    pid: int
    def __init__(self, vars: _Optional[_Iterable[_Union[EnvVar, _Mapping]]] = ..., pid: _Optional[int] = ...) -> None: ...
