from otter.test_files import test_case

OK_FORMAT = False

name = "adaptive_adjacency"
points = None

@test_case(points=1, hidden=False)
def test_adaptive_adjacency_small(adaptive_adjacency):
    from companion.exercises import station_attention as ex
    ex.check_adaptive_adjacency_small(adaptive_adjacency)

