from otter.test_files import test_case

OK_FORMAT = False

name = "merge_heads"
points = None

@test_case(points=1, hidden=False)
def test_merge_heads_small(merge_heads):
    from companion.exercises import multihead_attention as ex
    ex.check_merge_heads_small(merge_heads)

