"""Tests for benchmarks/bench_collectives.py: the HLO collective counter on hand-written HLO, one real compile."""
import re

import pytest

from benchmarks import bench_collectives as bench

# Synchronous collectives; a fusion whose name and metadata mention collectives is not one; the
# all-reduce named psum_invariant.3 (as shard_map names them) is one.
SYNC = """HloModule m, entry_computation_layout={(f32[1,8]{1,0}, bf16[2,4]{1,0}, f32[16]{0})->f32[]}

%add (x: f32[], y: f32[]) -> f32[] {
  %x = f32[] parameter(0)
  %y = f32[] parameter(1)
  ROOT %add.1 = f32[] add(f32[] %x, f32[] %y)
}

ENTRY %main (p0: f32[1,8], p1: bf16[2,4], p2: f32[16]) -> f32[] {
  %p0 = f32[1,8]{1,0} parameter(0)
  %p1 = bf16[2,4]{1,0} parameter(1)
  %p2 = f32[16]{0} parameter(2)
  %c = s32[3]{0} constant({1, 2, 3})
  %b = bf16[4,4]{1,0} broadcast(%p1), dimensions={}
  %psum_invariant.3 = (f32[1,8]{1,0}, bf16[4,4]{1,0}, /*index=2*/s32[3]{0}) all-reduce(%p0, %b, %c), channel_id=1, \
replica_groups={{0,1,2,3,4,5,6,7}}, use_global_device_ids=true, to_apply=%add, metadata={op_name="all-gather(x)"}
  %all-gather.2 = bf16[16,4]{1,0} all-gather(bf16[2,4]{1,0} %p1), channel_id=2, replica_groups={{0,1,2,3,4,5,6,7}}, \
dimensions={0}
  %reduce-scatter = f32[2]{0} reduce-scatter(%p2), channel_id=3, replica_groups={{0,1,2,3,4,5,6,7}}, dimensions={0}, \
to_apply=%add
  %collective-permute.7 = s32[3]{0} collective-permute(%c), channel_id=4, source_target_pairs={{0,1},{1,0}}
  %all-to-all = f32[16]{0} all-to-all(%p2), channel_id=5, replica_groups={{0,1}}, dimensions={0}
  %all-reduce.fusion = f32[1,8]{1,0} fusion(%p0), kind=kLoop, calls=%add, metadata={op_name="all-reduce"}
  ROOT %r = f32[] constant(0)
}
"""

# The same collectives asynchronous (names without %, as XLA also prints them); a reduce-scatter with an
# -update step; a generic async-start/done whose wrapped computation holds the all-to-all (counted there).
ASYNC = """HloModule m, is_scheduled=true

wrapped {
  q = f32[16]{0} parameter(0)
  ROOT a2a = f32[16]{0} all-to-all(q), replica_groups={{0,1}}, dimensions={0}
}

ENTRY main {
  p0 = f32[1,8]{1,0} parameter(0)
  p1 = bf16[2,4]{1,0} parameter(1)
  p2 = f32[16]{0} parameter(2)
  c = s32[3]{0} constant({1, 2, 3})
  ars = (f32[1,8]{1,0}, s32[3]{0}) all-reduce-start(p0, c), replica_groups={{0,1}}, to_apply=add
  ard = (f32[1,8]{1,0}, s32[3]{0}) all-reduce-done(ars)
  ags = (bf16[2,4]{1,0}, bf16[16,4]{1,0}) all-gather-start(p1), replica_groups={}, dimensions={0}
  agd = bf16[16,4]{1,0} all-gather-done(ags)
  rss = ((f32[16]{0}), f32[2]{0}) reduce-scatter-start(p2), dimensions={0}, to_apply=add
  rsu = ((f32[16]{0}), f32[2]{0}) reduce-scatter-update(rss)
  rsd = f32[2]{0} reduce-scatter-done(rsu)
  cps = (s32[3]{0}, s32[3]{0}, u32[], u32[]) collective-permute-start(c), source_target_pairs={{0,1},{1,0}}
  cpd = s32[3]{0} collective-permute-done(cps)
  aas = ((f32[16]{0}), f32[16]{0}, s32[]) async-start(p2), calls=wrapped
  aad = f32[16]{0} async-done(aas)
  ROOT t = (bf16[16,4]{1,0}, f32[2]{0}) tuple(agd, rsd)
}
"""


def test_shape_bytes_of_arrays_tuples_and_element_types():
    assert bench.shape_bytes("f32[2,3]{1,0}") == 24
    assert bench.shape_bytes("bf16[]") == 2 and bench.shape_bytes("s32[5]") == 20 and bench.shape_bytes("pred[3]") == 3
    assert bench.shape_bytes("(f32[1]{0}, /*index=1*/bf16[2,2]{1,0}, s32[3])") == 4 + 8 + 12
    assert bench.shape_bytes("((f32[16]{0}), f32[2]{0}, token[])") == 72
    assert bench.shape_bytes("f32[<=8]") == 32 and bench.shape_bytes("s4[3]") == 2
    with pytest.raises(ValueError, match="unknown HLO element type 'q7'"):
        bench.shape_bytes("q7[2]")


def test_parse_instructions_reads_opcode_shape_and_operands():
    ins = bench.parse_instructions(SYNC)
    assert ins["psum_invariant.3"] == ("all-reduce", "(f32[1,8]{1,0}, bf16[4,4]{1,0}, /*index=2*/s32[3]{0})",
                                       ["p0", "b", "c"], True)
    assert ins["all-gather.2"] == ("all-gather", "bf16[16,4]{1,0}", ["p1"], True)  # typed operand: its name
    assert ins["r"] == ("constant", "f32[]", ["0"], True)
    assert ins["add.1"] == ("add", "f32[]", ["x", "y"], False)
    assert "main" not in ins and "add" not in ins  # computation headers are not instructions


EXPECTED_BYTES = {
    "all-reduce": 32 + 32 + 12,  # tuple f32[1,8] + bf16[4,4] + s32[3]
    "all-gather": 128,  # the gathered bf16[16,4], not the bf16[2,4] shard
    "reduce-scatter": 64,  # the f32[16] input, not the f32[2] shard
    "collective-permute": 12,
    "all-to-all": 64,
}


def test_sync_collectives_counted_by_opcode_with_their_full_buffer_bytes():
    out = bench.count_collectives(SYNC)
    assert out["counts"] == dict.fromkeys(bench.KINDS, 1)
    assert out["bytes"] == EXPECTED_BYTES
    assert out["total_count"] == 5 and out["total_bytes"] == sum(EXPECTED_BYTES.values())
    assert out["outside_entry"] == 0


def test_async_pairs_are_one_collective_each():
    out = bench.count_collectives(ASYNC)
    assert out["counts"] == dict.fromkeys(bench.KINDS, 1)
    assert out["bytes"] == {**EXPECTED_BYTES, "all-reduce": 32 + 12}  # this all-reduce has no bf16 element
    assert out["outside_entry"] == 1  # the all-to-all in its wrapped computation


def test_no_collectives_in_plain_hlo():
    out = bench.count_collectives(SYNC.split("  %psum_invariant.3")[0] + "}\n")
    assert out["total_count"] == 0 and out["total_bytes"] == 0 and out["bytes"] == dict.fromkeys(bench.KINDS, 0)


def test_real_vanilla_step_on_one_device_has_no_collectives_under_auto():
    hlo = bench.lower_step("vanilla", "auto", "mlp", 16, devices=1).compile().as_text()
    assert bench.count_collectives(hlo) == {"counts": dict.fromkeys(bench.KINDS, 0),
                                            "bytes": dict.fromkeys(bench.KINDS, 0), "total_count": 0,
                                            "total_bytes": 0, "outside_entry": 0}
    # The parser reads the real text: the ENTRY parameters it finds are the module's declared inputs.
    header = re.search(r"entry_computation_layout=\{\((.*)\)->", hlo.splitlines()[0]).group(1)
    entry = hlo[hlo.index("\nENTRY"):]
    entry = entry[:entry.index("\n}")]
    params = [i.shape for i in bench.parse_instructions(entry).values() if i.opcode == "parameter"]
    assert len(params) == len(bench._split_top(header)) > 0
    assert sum(map(bench.shape_bytes, params)) == bench.shape_bytes(header) > 0


def test_table_marks_errors_and_collectives_outside_entry():
    ok = bench.count_collectives(SYNC)
    results = {"vanilla": {"auto": ok, "shard_map": bench.count_collectives(ASYNC)},
               "btw": {"auto": ok, "shard_map": {"error": "ValueError: btw: ..."}}}
    rows = bench.markdown(results, ["auto", "shard_map"])
    kinds = "all-reduce x1, all-gather x1, reduce-scatter x1, collective-permute x1, all-to-all x1"
    assert rows[2] == f"| vanilla | 5 / 344 | 5* / 312 | auto: {kinds}; shard_map: {kinds} |"
    assert rows[3] == f"| btw | 5 / 344 | error | auto: {kinds} |"
