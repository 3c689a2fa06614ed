from otter.test_files import test_case

OK_FORMAT = False

name = "split_heads"
points = None

@test_case(points=1, hidden=False)
def test_split_heads_small(split_heads):
    from companion.exercises import multihead_attention as ex
    ex.check_split_heads_small(split_heads)

