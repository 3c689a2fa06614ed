from otter.test_files import test_case

OK_FORMAT = False

name = "mha_num_parameters"
points = None

@test_case(points=1, hidden=False)
def test_mha_num_parameters_small(mha_num_parameters):
    from companion.exercises import multihead_attention as ex
    ex.check_num_parameters_small(mha_num_parameters)

