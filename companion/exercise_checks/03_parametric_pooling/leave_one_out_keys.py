from otter.test_files import test_case

OK_FORMAT = False

name = "leave_one_out_keys"
points = None

@test_case(points=1, hidden=False)
def test_leave_one_out_keys_small(leave_one_out_keys):
    from companion.exercises import parametric_pooling as ex
    ex.check_leave_one_out_keys_small(leave_one_out_keys)

