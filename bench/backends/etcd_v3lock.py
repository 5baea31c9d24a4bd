"""etcd's v3lock gRPC service (``v3lockpb.Lock``), built on the message types aetcd ships.

aetcd generates etcd's KV, Lease, Watch, Cluster and Maintenance services but not the lock
service (etcd's ``server/etcdserver/api/v3lock/v3lockpb/v3lock.proto``), whose four messages are
small. They are declared here as a descriptor over aetcd's ``rpc.proto`` (for ``ResponseHeader``),
so the messages are real protobuf classes checked by the protobuf runtime, not hand-encoded bytes:

    message LockRequest    { bytes name = 1; int64 lease = 2; }
    message LockResponse   { etcdserverpb.ResponseHeader header = 1; bytes key = 2; }
    message UnlockRequest  { bytes key = 1; }
    message UnlockResponse { etcdserverpb.ResponseHeader header = 1; }
    service Lock { rpc Lock(LockRequest) returns (LockResponse);
                   rpc Unlock(UnlockRequest) returns (UnlockResponse); }
"""

from __future__ import annotations

from typing import Any

from aetcd.rpc import rpc_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

LOCK_METHOD = "/v3lockpb.Lock/Lock"
UNLOCK_METHOD = "/v3lockpb.Lock/Unlock"
_FILE = "lockbench/v3lock.proto"

_F = descriptor_pb2.FieldDescriptorProto


def _field(message: Any, name: str, number: int, kind: int, type_name: str | None = None) -> None:
    field = message.field.add()
    field.name = name
    field.number = number
    field.label = _F.LABEL_OPTIONAL
    field.type = kind
    if type_name is not None:
        field.type_name = type_name


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name=_FILE, package="v3lockpb", syntax="proto3", dependency=[rpc_pb2.DESCRIPTOR.name]
    )
    header = ".etcdserverpb.ResponseHeader"
    lock_request = proto.message_type.add(name="LockRequest")
    _field(lock_request, "name", 1, _F.TYPE_BYTES)
    _field(lock_request, "lease", 2, _F.TYPE_INT64)
    lock_response = proto.message_type.add(name="LockResponse")
    _field(lock_response, "header", 1, _F.TYPE_MESSAGE, header)
    _field(lock_response, "key", 2, _F.TYPE_BYTES)
    unlock_request = proto.message_type.add(name="UnlockRequest")
    _field(unlock_request, "key", 1, _F.TYPE_BYTES)
    unlock_response = proto.message_type.add(name="UnlockResponse")
    _field(unlock_response, "header", 1, _F.TYPE_MESSAGE, header)
    return proto


def _load() -> dict[str, Any]:
    pool = descriptor_pool.Default()
    try:
        file = pool.FindFileByName(_FILE)
    except KeyError:
        file = pool.Add(_file_descriptor())
    return {
        name: message_factory.GetMessageClass(file.message_types_by_name[name])
        for name in ("LockRequest", "LockResponse", "UnlockRequest", "UnlockResponse")
    }


_MESSAGES = _load()
LockRequest: Any = _MESSAGES["LockRequest"]
LockResponse: Any = _MESSAGES["LockResponse"]
UnlockRequest: Any = _MESSAGES["UnlockRequest"]
UnlockResponse: Any = _MESSAGES["UnlockResponse"]


class LockStub:
    """The v3lock service's two unary methods on a ``grpc.aio`` channel."""

    def __init__(self, channel: Any) -> None:
        self.Lock = channel.unary_unary(
            LOCK_METHOD,
            request_serializer=LockRequest.SerializeToString,
            response_deserializer=LockResponse.FromString,
        )
        self.Unlock = channel.unary_unary(
            UNLOCK_METHOD,
            request_serializer=UnlockRequest.SerializeToString,
            response_deserializer=UnlockResponse.FromString,
        )
