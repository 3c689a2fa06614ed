from otter.test_files import test_case

OK_FORMAT = False

name = "spatial_gating_unit"
points = None

@test_case(points=1, hidden=False)
def test_spatial_gating_unit_small(spatial_gating_unit):
    from companion.exercises import gating_vs_attention as ex
    ex.check_spatial_gating_unit_small(spatial_gating_unit)

