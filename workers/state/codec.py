"""State values as bytes that cannot run code when read: msgpack plus an allowlist.

Pickle rebuilds whatever a file names, so a crafted state file or changelog
record runs code on the worker that reads it. This codec writes plain msgpack
(numbers, strings, bytes, lists, maps) and a few tagged extension types for
what state really holds: tuples, sets, ``array`` s, ``collections`` types,
``random.Random`` and objects of the product's own classes and river's (the
online models). Reading only ever:

* creates builtin containers and numbers;
* makes an object of a class found under :data:`ALLOWED_MODULES` with
  ``cls.__new__`` (no ``__init__``, no ``__reduce__``, no ``__setstate__``) and
  sets its attributes, which are themselves decoded data;
* rebuilds a ``functools.partial`` only around a method named in
  :data:`ALLOWED_METHODS` of an object it decoded (river's centres draw from
  ``random.Random.gauss`` that way).

So the worst a crafted record can do is produce wrong state, which the
configuration fingerprint and the state's own checks then refuse. Objects
shared by several others (a river model's random generator and the draws of its
centres) stay shared after a round trip, as with pickle.
"""

from __future__ import annotations

import array
import collections
import functools
import importlib
import random
import threading
from typing import Any

import msgpack

from workers.errors import StateError

ALLOWED_MODULES = ("workers.core.", "river.")
ALLOWED_FACTORIES: dict[str, Any] = {"float": float, "int": int, "list": list, "dict": dict,
                                     "set": set, "str": str}
ALLOWED_METHODS = frozenset({"gauss", "random", "uniform"})
_THREAD = threading.local()  # each thread's packer: restores and stores pack in threads

# extension type codes: part of the state format (workers.state.saved.FORMAT)
_TUPLE, _SET, _FROZENSET, _ARRAY, _DEFAULTDICT, _COUNTER, _DEQUE = 1, 2, 3, 4, 5, 6, 7
_RANDOM, _OBJECT, _REF, _PARTIAL = 8, 9, 10, 11


class _Packer:
    """One value to msgpack; objects get a number so a second mention is a reference.

    An extension type's payload is packed on its own, inside the packing of what holds
    it: one msgpack ``Packer`` per level of that nesting, made once and reused (a
    ``Packer`` costs a buffer to make, and a profile's traits alone nest a tuple each).
    """

    def __init__(self) -> None:
        self._ids: dict[int, int] = {}
        self._keep: list[Any] = []  # keeps ids unique while packing
        self._levels: list[msgpack.Packer] = []
        self._depth = 0

    def pack(self, value: Any) -> bytes:
        depth = self._depth
        if depth == len(self._levels):
            self._levels.append(msgpack.Packer(default=self._default, use_bin_type=True,
                                               strict_types=True))
        self._depth = depth + 1
        try:
            return self._levels[depth].pack(value)  # resets its buffer, also on an error
        finally:
            self._depth = depth

    def pack_value(self, value: Any) -> bytes:
        """A whole value: the references of the one before are forgotten."""
        try:
            return self.pack(value)
        finally:
            self._ids.clear()
            self._keep.clear()

    @property
    def busy(self) -> bool:
        return self._depth > 0

    def _default(self, value: Any) -> msgpack.ExtType:
        kind = type(value)
        if kind is tuple:
            return msgpack.ExtType(_TUPLE, self.pack(list(value)))
        if kind is set or kind is frozenset:
            items = sorted(value, key=repr)  # the same bytes for the same set
            return msgpack.ExtType(_SET if kind is set else _FROZENSET, self.pack(items))
        if kind is array.array:
            return msgpack.ExtType(_ARRAY, self.pack([value.typecode, value.tobytes()]))
        if kind is collections.Counter:
            return msgpack.ExtType(_COUNTER, self.pack(dict(value)))
        if kind is collections.deque:
            return msgpack.ExtType(_DEQUE, self.pack([list(value), value.maxlen]))
        if kind is collections.defaultdict:
            return msgpack.ExtType(_DEFAULTDICT, self.pack([self._factory(value.default_factory),
                                                            dict(value)]))
        if kind is functools.partial:
            return self._partial(value)
        return self._object(value)

    def _factory(self, factory: Any) -> Any:
        if factory is None:
            return None
        for name, allowed in ALLOWED_FACTORIES.items():
            if factory is allowed:
                return name
        if type(factory) is functools.partial:
            return self._partial(factory)
        raise StateError(f"cannot save a defaultdict whose default is {factory!r}")

    def _partial(self, value: functools.partial[Any]) -> msgpack.ExtType:
        func = value.func
        owner = getattr(func, "__self__", None)
        name = getattr(func, "__name__", "")
        if owner is None or name not in ALLOWED_METHODS or value.keywords:
            raise StateError(f"cannot save {value!r}: only methods named"
                             f" {sorted(ALLOWED_METHODS)} of saved objects can be")
        return msgpack.ExtType(_PARTIAL, self.pack([owner, name, list(value.args)]))

    def _object(self, value: Any) -> msgpack.ExtType:
        known = self._ids.get(id(value))
        if known is not None:
            return msgpack.ExtType(_REF, self.pack(known))
        number = self._ids[id(value)] = len(self._ids)
        self._keep.append(value)
        kind = type(value)
        if kind is random.Random:
            return msgpack.ExtType(_RANDOM, self.pack([number, value.getstate()]))
        path = f"{kind.__module__}.{kind.__qualname__}"
        if not kind.__module__.startswith(ALLOWED_MODULES) or "<" in kind.__qualname__:
            raise StateError(f"cannot save an object of {path}")
        slots = _slots(kind)
        if not slots and not hasattr(value, "__dict__"):  # a compiled class: C fields
            raise StateError(f"cannot save an object of {path}: its fields are not listed"
                             " in __slots__")
        attributes = dict(getattr(value, "__dict__", {}))
        for slot in slots:
            if hasattr(value, slot):
                attributes[slot] = getattr(value, slot)
        return msgpack.ExtType(_OBJECT, self.pack([number, kind.__module__, kind.__qualname__,
                                                   attributes]))


class _Unpacker:
    """Bytes from :class:`_Packer` back to values, creating nothing outside the allowlist."""

    def __init__(self) -> None:
        self._objects: dict[int, Any] = {}

    def unpack(self, data: bytes) -> Any:
        return msgpack.unpackb(data, ext_hook=self._ext, raw=False, strict_map_key=False,
                               use_list=True)

    def _ext(self, code: int, data: bytes) -> Any:
        if code == _TUPLE:
            return tuple(self.unpack(data))
        if code == _SET:
            return set(self.unpack(data))
        if code == _FROZENSET:
            return frozenset(self.unpack(data))
        if code == _ARRAY:
            typecode, raw = self.unpack(data)
            return array.array(typecode, raw)
        if code == _COUNTER:
            return collections.Counter(self.unpack(data))
        if code == _DEQUE:
            items, maxlen = self.unpack(data)
            return collections.deque(items, maxlen)
        if code == _DEFAULTDICT:
            factory, items = self.unpack(data)
            made: collections.defaultdict[Any, Any] = collections.defaultdict(
                self._factory(factory))
            made.update(items)
            return made
        if code == _PARTIAL:
            owner, name, args = self.unpack(data)
            if name not in ALLOWED_METHODS or not hasattr(owner, name):
                raise StateError(f"the state names a method {name!r} it may not")
            return functools.partial(getattr(owner, name), *args)
        if code == _REF:
            return self._objects[self.unpack(data)]
        if code == _RANDOM:
            number, state = self.unpack(data)
            rng = self._objects[number] = random.Random()
            rng.setstate(_tuples(state))
            return rng
        if code == _OBJECT:
            return self._object(*self.unpack(data))
        raise StateError(f"unknown value type {code} in the state")

    def _factory(self, factory: Any) -> Any:
        if factory is None or isinstance(factory, functools.partial):
            return factory
        if factory not in ALLOWED_FACTORIES:
            raise StateError(f"the state names a default {factory!r} it may not")
        return ALLOWED_FACTORIES[factory]

    def _object(self, number: int, module: str, qualname: str,
                attributes: dict[str, Any]) -> Any:
        if not module.startswith(ALLOWED_MODULES) or "<" in qualname:
            raise StateError(f"the state names a class {module}.{qualname} it may not hold")
        try:
            kind: Any = importlib.import_module(module)
            for part in qualname.split("."):
                kind = getattr(kind, part)
        except (ImportError, AttributeError):
            raise StateError(f"the state names {module}.{qualname}, which this version"
                             " does not have") from None
        if not isinstance(kind, type):
            raise StateError(f"the state names {module}.{qualname}, which is not a class")
        new: Any = kind.__new__  # an extension type (compiled) refuses object.__new__
        made: Any = new(kind)
        self._objects[number] = made
        for name, value in attributes.items():
            object.__setattr__(made, name, value)
        return made


def _slots(kind: type) -> list[str]:
    return [slot for klass in kind.__mro__ for slot in getattr(klass, "__slots__", ())
            if slot not in ("__dict__", "__weakref__")]


def _tuples(value: Any) -> Any:
    """``random.Random.setstate`` wants tuples where msgpack gives lists."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def pack(value: Any) -> bytes:
    """``value`` as bytes; a :class:`StateError` names what cannot be saved safely."""
    packer = getattr(_THREAD, "packer", None)
    if packer is None:
        packer = _THREAD.packer = _Packer()
    elif packer.busy:  # a value packed while packing another (a __getstate__ that packs)
        packer = _Packer()
    return packer.pack_value(value)


def unpack(data: bytes) -> Any:
    """Bytes from :func:`pack` back to a value; damaged or foreign bytes: a StateError."""
    try:
        return _Unpacker().unpack(data)
    except StateError:
        raise
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
        raise StateError(f"damaged state value ({type(exc).__name__}: {exc})") from None
