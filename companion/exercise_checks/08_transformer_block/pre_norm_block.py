from otter.test_files import test_case

OK_FORMAT = False

name = "pre_norm_block"
points = None

@test_case(points=1, hidden=False)
def test_pre_norm_block_small(pre_norm_block):
    from companion.exercises import transformer_block as ex
    ex.check_pre_norm_block_small(pre_norm_block)

