from otter.test_files import test_case

OK_FORMAT = False

name = "online_softmax_merge"
points = None

@test_case(points=1, hidden=False)
def test_online_softmax_merge_small(online_softmax_merge):
    from companion.exercises import long_sequences as ex
    ex.check_online_softmax_merge_small(online_softmax_merge)

