"""``benchmarks/hotspots.py``: perf's samples charged to the package's compiled functions
by their Python names, which is what the BENCHMARKS.md ``hotspots`` row reads."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from hotspots import python_name, shares

# three samples as ``perf script`` prints them (frames innermost first, then a blank line)
SCRIPT = """\
python 4242 100.000001:    1001001 cpu-clock:
\t          1bf1ae unicodekeys_lookup_unicode+0x2e (/usr/lib/libpython3.11.so.1.0)
\t          1c0a10 PyDict_GetItemWithError+0x10 (/usr/lib/libpython3.11.so.1.0)
\t            9a10 __pyx_f_7workers_4core_8identity_13IdentityGraph_resolve+0x90 (/w/identity.so)
\t            7c20 __pyx_f_7workers_4core_14identity_stage_13IdentityStage__process+0x20 (/w/s.so)

python 4242 100.001002:    1001001 cpu-clock:
\t          2a0010 _PyObject_Malloc+0x10 (/usr/lib/libpython3.11.so.1.0)
\t           117e0 [unknown] (/v/site-packages/orjson/orjson.cpython-311-x86_64-linux-gnu.so)
\t            8100 __pyx_f_7workers_4core_11touchpoints_decode_object+0x40 (/w/touchpoints.so)

python 4242 100.002003:    1001001 cpu-clock:
\t          2b0000 free_keys_object+0x8 (/usr/lib/libpython3.11.so.1.0)
\t            6600 __pyx_tp_dealloc_7workers_4core_11touchpoints_Touchpoint+0x11 (/w/t.so)
\t            9a10 __pyx_f_7workers_4core_12profile_work_11ProfileWork_run_tick+0x9 (/w/p.so)

python 4242 100.003004:    1001001 cpu-clock:
\t          1d0000 _PyEval_EvalFrameDefault+0x20 (/usr/lib/libpython3.11.so.1.0)
"""


def test_a_sample_goes_to_the_innermost_compiled_function_orjson_or_outside() -> None:
    total, found = shares(SCRIPT.splitlines())
    assert total == 4
    assert dict(found) == {"core.identity.IdentityGraph.resolve": 0.25,
                           "orjson.loads": 0.25, "core.touchpoints.Touchpoint (freed)": 0.25,
                           "(outside the compiled modules)": 0.25}


def test_cython_names_read_back_as_python_names() -> None:
    assert (python_name("__pyx_f_7workers_4core_8features_12ProfileState_update")
            == "workers.core.features.ProfileState.update")
    # a Python-visible wrapper's index before the name is not a part of the path
    assert (python_name("__pyx_pw_7workers_4core_14identity_stage_13IdentityStage_3feed")
            == "workers.core.identity_stage.IdentityStage.feed")
    assert python_name("__pyx_pw_7workers_4core_8segments_19_lloyd") == (
        "workers.core.segments._lloyd")
    assert python_name("__pyx_f_7workers_4core_12profile_work__id_hash") == (
        "workers.core.profile_work._id_hash")
    assert python_name("__pyx_tp_new_vectorcall_7workers_4core_12profile_work_Dirty") == (
        "workers.core.profile_work.Dirty (made)")
    assert python_name("PyDict_GetItemWithError") is None
