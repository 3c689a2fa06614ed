from otter.test_files import test_case

OK_FORMAT = False

name = "loo_mse"
points = None

@test_case(points=1, hidden=False)
def test_loo_mse_small(loo_mse):
    from companion.exercises import nonparametric_pooling as ex
    ex.check_loo_mse_small(loo_mse)

