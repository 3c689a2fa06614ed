from otter.test_files import test_case

OK_FORMAT = False

name = "rotation_for_offset"
points = None

@test_case(points=1, hidden=False)
def test_rotation_for_offset_small(rotation_for_offset):
    from companion.exercises import positional_encoding as ex
    ex.check_rotation_for_offset_small(rotation_for_offset)

