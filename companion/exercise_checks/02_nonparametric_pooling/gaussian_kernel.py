from otter.test_files import test_case

OK_FORMAT = False

name = "gaussian_kernel"
points = None

@test_case(points=1, hidden=False)
def test_gaussian_kernel_values(gaussian_kernel):
    from companion.exercises import nonparametric_pooling as ex
    ex.check_gaussian_kernel_values(gaussian_kernel)

