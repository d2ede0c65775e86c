"""The one exception the app handlers raise for problems a user can fix."""


class AppError(ValueError):
    """A user-facing problem (bad input, unreadable upload, model not found).

    Its message is written for the person in front of the page: the UI shows it as is (``gr.Error``).
    """
