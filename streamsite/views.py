from django.shortcuts import render


def home(request):
    """Render the home page: what the site does and where to go next."""
    return render(request, "home.html")
