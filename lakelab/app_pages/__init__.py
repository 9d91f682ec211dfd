"""The pages of the Streamlit app (``app.py``), one script per page, plus ``common``.

Each page is a plain Streamlit script that ``app.py`` registers with ``st.navigation``; every
computation on it is a lakelab call, cached with ``st.cache_data`` / ``st.cache_resource``.
To add a page (e.g. the LM track's): write ``lakelab/app_pages/NAME.py``, give its widget keys
a prefix of their own, add that prefix to ``common.PAGE_PREFIXES`` and the page to
``app.PAGES``. Nothing here is imported by the library; the scripts only run inside
Streamlit.
"""
