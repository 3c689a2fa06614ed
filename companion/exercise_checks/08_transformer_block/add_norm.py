from otter.test_files import test_case

OK_FORMAT = False

name = "add_norm"
points = None

@test_case(points=1, hidden=False)
def test_add_norm_small(add_norm):
    from companion.exercises import transformer_block as ex
    ex.check_add_norm_small(add_norm)

