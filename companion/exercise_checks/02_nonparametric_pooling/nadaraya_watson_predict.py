from otter.test_files import test_case

OK_FORMAT = False

name = "nadaraya_watson_predict"
points = None

@test_case(points=1, hidden=False)
def test_nadaraya_watson_predict_small(nadaraya_watson_predict):
    from companion.exercises import nonparametric_pooling as ex
    ex.check_nadaraya_watson_predict_small(nadaraya_watson_predict)

