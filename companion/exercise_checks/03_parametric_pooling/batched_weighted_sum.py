from otter.test_files import test_case

OK_FORMAT = False

name = "batched_weighted_sum"
points = None

@test_case(points=1, hidden=False)
def test_batched_weighted_sum_small(batched_weighted_sum):
    from companion.exercises import parametric_pooling as ex
    ex.check_batched_weighted_sum_small(batched_weighted_sum)

