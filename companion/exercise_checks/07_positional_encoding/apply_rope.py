from otter.test_files import test_case

OK_FORMAT = False

name = "apply_rope"
points = None

@test_case(points=1, hidden=False)
def test_apply_rope_small(apply_rope):
    from companion.exercises import positional_encoding as ex
    ex.check_apply_rope_small(apply_rope)

