from otter.test_files import test_case

OK_FORMAT = False

name = "neighbour_softmax"
points = None

@test_case(points=1, hidden=False)
def test_neighbour_softmax_small(neighbour_softmax):
    from companion.exercises import graph_attention as ex
    ex.check_neighbour_softmax_small(neighbour_softmax)

