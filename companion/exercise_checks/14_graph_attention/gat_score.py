from otter.test_files import test_case

OK_FORMAT = False

name = "gat_score"
points = None

@test_case(points=1, hidden=False)
def test_gat_score_small(gat_score):
    from companion.exercises import graph_attention as ex
    ex.check_gat_score_small(gat_score)

