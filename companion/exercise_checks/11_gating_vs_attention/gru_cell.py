from otter.test_files import test_case

OK_FORMAT = False

name = "gru_cell"
points = None

@test_case(points=1, hidden=False)
def test_gru_cell_small(gru_cell):
    from companion.exercises import gating_vs_attention as ex
    ex.check_gru_cell_small(gru_cell)

