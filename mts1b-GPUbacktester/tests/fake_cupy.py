"""A strict CPU stand-in for cupy, for tests only (never shipped in the package).

Why: CI has no GPU, so without this the ``backend.name == "cupy"`` branches and every kernel
line that runs only with ``xp=cupy`` would never execute. The numbers a real GPU computes are
not what breaks first; what breaks is host/device mixing: a numpy array handed to a device
operation, a device array handed to numpy or pandas, a result read back without ``.get()``.
cupy refuses all of those at run time, so this stand-in refuses them the same way, on the CPU,
and the cupy code path can be run in every test session.

How: a device array (:class:`ndarray`) wraps a numpy array and is *not* a ``numpy.ndarray``.

* ``numpy.asarray(dev)`` (and anything that converts through ``__array__``: pandas, numpy
  indexing with a device index, ``np.concatenate``...) raises cupy's ``TypeError``
  "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a
  NumPy array explicitly."
* An operator or a namespace function given a numpy *array* next to a device array raises
  ``TypeError: Unsupported type <class 'numpy.ndarray'>``, as cupy's kernels do; Python and
  numpy *scalars* are accepted, as in cupy.
* ``dev.get()`` and :func:`asnumpy` return a copy on the host; :func:`asarray` copies a host
  array to the "device" (so later host writes do not leak through, as with a real transfer)
  and, like cupy, refuses what a GPU cannot hold: ``None``, objects, strings, datetimes.
* Indexing accepts numpy integer/boolean index arrays (cupy copies them to the device) and
  returns device arrays, 0-d ones included: ``dev[i, j]`` is not a Python float, as in cupy.
  ``dev[basic slice] = numpy_array`` raises ``ValueError`` like cupy's ``fill``; with an
  advanced index a host value is copied over, as cupy does.
* ``bool``/``float``/``int`` of a one-element array work (cupy synchronises and reads it back);
  of a larger array they raise as numpy does.

Deliberately stricter than cupy (each documented because a real GPU would accept it):

* numpy functions and ufuncs called *on* a device array (``np.isnan(dev)``, ``np.where(dev,
  ...)``) raise ``TypeError`` here, while cupy dispatches them to itself through
  ``__array_ufunc__`` / ``__array_function__``. In this package the kernels call ``xp.*``
  explicitly; a ``np.*`` call on a device array means the author thought the array was on the
  host, and refusing it points at that line instead of at a later failure.
* ``np.broadcast_to``'s views are read-only (cupy's are writable but share memory, so writing
  through one is a bug anyway).
* No ``__index__``: a device scalar cannot size a Python ``range`` or slice. cupy would read it
  back implicitly; here an explicit ``int(...)`` is required.

Only the functions the kernels use exist (``grep 'xp\\.' src/``); a missing one is an
``AttributeError``, which is the honest answer for "the stand-in has not been taught this".
Arithmetic runs in numpy on the CPU, so results equal the numpy backend bit for bit; the
stand-in checks *where* data lives, not GPU rounding (that still needs a real device).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

__version__ = "0.0.0+cpu-stand-in"

#: cupy's own words (cupy/_core/core.pyx, ``ndarray.__array__``)
IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly.")

DEVICE_NAME = "CPU stand-in for cupy (tests/fake_cupy.py)"

float64 = np.float64
int64 = np.int64
int8 = np.int8
bool_ = np.bool_
nan = np.nan
inf = np.inf
newaxis = None


def _unsupported(x: Any) -> TypeError:
    return TypeError(f"Unsupported type {type(x)}")


_NOT_AN_OPERAND = object()


def _operand(x: Any) -> Any:
    """An operator's other side as numpy sees it, or ``_NOT_AN_OPERAND``."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        raise _unsupported(x)
    if isinstance(x, bool | int | float | complex | np.generic):
        return x
    return _NOT_AN_OPERAND


def _unwrap(x: Any) -> Any:
    """A namespace function's argument: device arrays unwrapped, host arrays refused."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        raise _unsupported(x)
    if isinstance(x, tuple | list):
        return type(x)(_unwrap(v) for v in x)
    return x


def _wrap(r: Any) -> Any:
    """numpy results as device arrays (scalars as 0-d arrays, as cupy returns them)."""
    if isinstance(r, np.ndarray):
        return ndarray(r)
    if isinstance(r, np.generic):
        return ndarray(np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    return r


def _index(key: Any) -> tuple[Any, bool]:
    """An index for the wrapped array, and whether it holds an advanced (array) index."""
    parts = key if isinstance(key, tuple) else (key,)
    out, advanced = [], False
    for k in parts:
        if isinstance(k, ndarray):
            out.append(k._a)
            advanced = True
        elif isinstance(k, np.ndarray | list):
            out.append(np.array(k))  # cupy copies host index arrays to the device
            advanced = True
        else:
            out.append(k)
    return (tuple(out) if isinstance(key, tuple) else out[0]), advanced


def _binary(op: Callable[[Any, Any], Any], *, reflected: bool = False
            ) -> Callable[[ndarray, Any], Any]:
    def method(self: ndarray, other: Any) -> Any:
        o = _operand(other)
        if o is _NOT_AN_OPERAND:
            return NotImplemented
        return _wrap(op(o, self._a) if reflected else op(self._a, o))
    return method


def _inplace(op: Callable[[Any, Any], Any]) -> Callable[[ndarray, Any], Any]:
    def method(self: ndarray, other: Any) -> Any:
        o = _operand(other)
        if o is _NOT_AN_OPERAND:
            return NotImplemented
        op(self._a, o)
        return self
    return method


class ndarray:  # noqa: N801 - the name cupy gives its device array
    """A device array: a numpy array that refuses to leave the device implicitly."""

    # the module a cupy array's type names, which is how quantkit's array_namespace tells a
    # device array (and then takes ``sys.modules["cupy"]``: this stand-in, while installed)
    __module__ = "cupy"
    __slots__ = ("_a",)
    __hash__ = None  # type: ignore[assignment]
    # numpy ufuncs (np.isnan(dev), host_array + dev) refuse device arrays; operators with a
    # numpy scalar on the left defer to the reflected methods below, which accept scalars
    __array_ufunc__ = None

    def __init__(self, data: np.ndarray) -> None:
        self._a = data

    # -- leaving the device ---------------------------------------------------------------
    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError(IMPLICIT)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        raise TypeError(f"{IMPLICIT} (numpy.{func.__name__} was called on a device array; "
                        f"the stand-in refuses what cupy would dispatch: use xp.{func.__name__})")

    def get(self) -> np.ndarray:
        return self._a.copy()

    def __bool__(self) -> bool:
        return bool(self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __repr__(self) -> str:
        return f"fake_cupy.ndarray({self._a!r})"

    # -- shape and dtype ------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._a.shape

    @property
    def ndim(self) -> int:
        return self._a.ndim

    @property
    def size(self) -> int:
        return self._a.size

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._a.dtype

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self)))

    # -- methods the kernels call ---------------------------------------------------------
    def copy(self) -> ndarray:
        return ndarray(self._a.copy())

    def astype(self, dtype: Any, copy: bool = True) -> ndarray:
        return ndarray(self._a.astype(dtype, copy=copy))

    def reshape(self, *shape: Any) -> ndarray:
        return ndarray(self._a.reshape(*_unwrap(shape)))

    def sum(self, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> ndarray:
        return _wrap(self._a.sum(axis=axis, dtype=dtype, keepdims=keepdims))  # type: ignore[no-any-return]

    def any(self, axis: Any = None, keepdims: bool = False) -> ndarray:
        return _wrap(self._a.any(axis=axis, keepdims=keepdims))  # type: ignore[no-any-return]

    def all(self, axis: Any = None, keepdims: bool = False) -> ndarray:
        return _wrap(self._a.all(axis=axis, keepdims=keepdims))  # type: ignore[no-any-return]

    # -- indexing -------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> ndarray:
        idx, _ = _index(key)
        return _wrap(self._a[idx])  # type: ignore[no-any-return]

    def __setitem__(self, key: Any, value: Any) -> None:
        idx, advanced = _index(key)
        if isinstance(value, ndarray):
            value = value._a
        elif isinstance(value, np.ndarray) and value.ndim and not advanced:
            # cupy routes a non-device value into a basic slice through ``fill``
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        self._a[idx] = value

    # -- operators ------------------------------------------------------------------------
    __add__, __radd__ = _binary(operator.add), _binary(operator.add, reflected=True)
    __sub__, __rsub__ = _binary(operator.sub), _binary(operator.sub, reflected=True)
    __mul__, __rmul__ = _binary(operator.mul), _binary(operator.mul, reflected=True)
    __truediv__ = _binary(operator.truediv)
    __rtruediv__ = _binary(operator.truediv, reflected=True)
    __floordiv__ = _binary(operator.floordiv)
    __rfloordiv__ = _binary(operator.floordiv, reflected=True)
    __mod__, __rmod__ = _binary(operator.mod), _binary(operator.mod, reflected=True)
    __pow__, __rpow__ = _binary(operator.pow), _binary(operator.pow, reflected=True)
    __and__, __rand__ = _binary(operator.and_), _binary(operator.and_, reflected=True)
    __or__, __ror__ = _binary(operator.or_), _binary(operator.or_, reflected=True)
    __xor__, __rxor__ = _binary(operator.xor), _binary(operator.xor, reflected=True)
    __eq__ = _binary(operator.eq)
    __ne__ = _binary(operator.ne)
    __lt__, __le__ = _binary(operator.lt), _binary(operator.le)
    __gt__, __ge__ = _binary(operator.gt), _binary(operator.ge)
    __iadd__, __isub__ = _inplace(operator.iadd), _inplace(operator.isub)
    __imul__, __itruediv__ = _inplace(operator.imul), _inplace(operator.itruediv)
    __iand__, __ior__ = _inplace(operator.iand), _inplace(operator.ior)
    __ixor__ = _inplace(operator.ixor)

    def __neg__(self) -> ndarray:
        return ndarray(-self._a)

    def __pos__(self) -> ndarray:
        return ndarray(+self._a)

    def __abs__(self) -> ndarray:
        return ndarray(np.abs(self._a))

    def __invert__(self) -> ndarray:
        return ndarray(~self._a)


# ------------------------------------------------------------------------------------------
# the namespace: host -> device, device -> host, and the functions the kernels call
# ------------------------------------------------------------------------------------------

def asarray(a: Any, dtype: Any = None) -> ndarray:
    """A device array: ``a`` itself when it already is one (of that dtype), else a copy."""
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    host = np.array(a, dtype=dtype)
    if host.dtype.kind in "OUSVMm":  # cupy has no object, string or datetime arrays
        raise ValueError(f"Unsupported dtype {host.dtype}")
    return ndarray(host)


def asnumpy(a: Any) -> np.ndarray:
    """A host copy of a device array (a host array passes through, as in cupy)."""
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def _device(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` on device arrays: host arrays refused, ``out=`` must be a device array."""
    def call(*args: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out")
        if out is not None and not isinstance(out, ndarray):
            raise TypeError(f"out must be a device array; got {type(out)}")
        result = func(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
        return out if out is not None else _wrap(result)
    call.__name__ = call.__qualname__ = func.__name__
    call.__doc__ = f"``numpy.{func.__name__}`` on device arrays (see the module docstring)."
    return call


# creation
zeros = _device(np.zeros)
empty = _device(np.empty)
full = _device(np.full)
arange = _device(np.arange)
zeros_like = _device(np.zeros_like)
# elementwise
where = _device(np.where)
isnan = _device(np.isnan)
isfinite = _device(np.isfinite)
abs = _device(np.abs)  # shadows the builtin, as cupy.abs does
sqrt = _device(np.sqrt)
expm1 = _device(np.expm1)
maximum = _device(np.maximum)
fmax = _device(np.fmax)
fmin = _device(np.fmin)
multiply = _device(np.multiply)
greater = _device(np.greater)
subtract = _device(np.subtract)
divide = _device(np.divide)
clip = _device(np.clip)
nan_to_num = _device(np.nan_to_num)
# reductions, scans, indexing helpers
all = _device(np.all)  # shadows the builtin, as cupy.all does
any = _device(np.any)  # shadows the builtin, as cupy.any does
cumsum = _device(np.cumsum)
bincount = _device(np.bincount)
flatnonzero = _device(np.flatnonzero)
nonzero = _device(np.nonzero)
argmax = _device(np.argmax)
take_along_axis = _device(np.take_along_axis)
broadcast_to = _device(np.broadcast_to)


def _device_count() -> int:
    return 1


def _device_properties(device: int) -> dict[str, Any]:
    if device != 0:
        raise ValueError(f"the stand-in has one device (0); got {device}")
    return {"name": DEVICE_NAME.encode()}


#: what :func:`mts1b_GPUbacktester.backend.cupy_status` asks: the device count and device 0's
#: name (bytes, as the CUDA runtime returns it)
cuda = SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=_device_count,
                                               getDeviceProperties=_device_properties))
